"""Static files: content-hashed and compressed once collected, plain names until then."""

import logging

from whitenoise.storage import CompressedManifestStaticFilesStorage

log = logging.getLogger(__name__)


class StaticStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's hashed, gzip- and brotli-compressed storage, forgiving a missing manifest.

    ``collectstatic`` writes ``name.<hash>.ext`` with ``.gz``/``.br`` siblings and a
    manifest; pages then link the hashed names, which WhiteNoise serves compressed with a
    one-year ``Cache-Control: immutable``. A file the manifest does not know (collectstatic
    not run, or run before the file existed) is linked by its plain name instead of failing
    the page: WhiteNoise serves it from the finders, uncompressed and briefly cached.
    """

    _warned: set[str] = set()

    def stored_name(self, name):
        try:
            return super().stored_name(name)
        except ValueError:
            if name not in self._warned:
                self._warned.add(name)
                log.warning("static file %s is not collected: serving its plain name; "
                            "run `manage.py collectstatic`", name)
            return name
