"""Spiking VGG family: VGG-11/13 with BN, VGGSNN, and a small CNN for the quick start.

All share one block, Conv3×3 → BN → N → dropout, with "M" = AvgPool2d(2).  Heads:
`adaptive7` (AdaptiveAvgPool2d(7) → Linear(512·49, K), linear N(0, 0.01), as the
published VGG-BN models) or `flatten` (Linear on the flattened final map, as VGGSNN).
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

from torch import Tensor, nn

from arlif.models.layers import DirectEncoder, SeqBatchNorm2d, SeqDropout, SeqToANN, init_weights

Layout = Sequence[Union[int, str]]

LAYOUTS: dict[str, Layout] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vggsnn": (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "quickcnn": (32, 64, "M", 64, "M"),
}
HEADS = {"vgg11": "adaptive7", "vgg13": "adaptive7", "vggsnn": "flatten", "quickcnn": "flatten"}


class SpikingVGG(nn.Module):
    def __init__(self, layout: Layout, head: str, num_classes: int, in_channels: int, image_size: int,
                 neuron: Callable[[int], nn.Module], dropout: float = 0.0, bn_mode: str = "per_step"):
        super().__init__()
        layers: list[nn.Module] = []
        ch, size = in_channels, image_size
        for item in layout:
            if item == "M":
                layers.append(SeqToANN(nn.AvgPool2d(2)))
                size //= 2
                continue
            conv = nn.Conv2d(ch, item, 3, 1, 1)
            layers += [SeqToANN(conv) if layers else DirectEncoder(conv),
                       SeqBatchNorm2d(item, bn_mode), neuron(item), SeqDropout(dropout)]
            ch = item
        if size < 1:
            raise ValueError(f"image_size={image_size} is too small for {len(layout)} layers with "
                             f"{list(layout).count('M')} 2x poolings")
        self.encoder = layers[0]
        self.features = nn.Sequential(*layers[1:])
        if head == "adaptive7":
            self.pool = SeqToANN(nn.Sequential(nn.AdaptiveAvgPool2d(7), nn.Flatten()))
            self.fc = nn.Linear(ch * 49, num_classes)
        else:
            self.pool = SeqToANN(nn.Flatten())
            self.fc = nn.Linear(ch * size * size, num_classes)
        init_weights(self, linear_std=0.01 if head == "adaptive7" else None)

    def forward(self, x: Tensor, T: int | None = None) -> Tensor:
        return self.fc(self.pool(self.features(self.encoder(x, T))))
