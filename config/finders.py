"""plotly.min.js from the installed plotly package: the pages' charts, never from a CDN."""

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "plotly/plotly.min.js"


class PlotlyFinder(BaseFinder):
    """Just ``plotly/plotly.min.js``: not the rest of plotly's package data (a 4.8 MB widget
    bundle, sample data sets), which collectstatic would otherwise copy and compress."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=Path(plotly.__file__).parent / "package_data")
        self.storage.prefix = "plotly"

    def find(self, path, find_all=False, **kwargs):
        match = self.storage.path("plotly.min.js") if path == PLOTLY_JS else None
        if find_all or kwargs.get("all"):
            return [match] if match else []
        return match

    def list(self, ignore_patterns):
        yield "plotly.min.js", self.storage
