"""Reports: tables, learning curves and figure data from run folders, read through `arlif.reports.runs`."""
