"""State changes of the studies app, one module per domain: ``ingestion`` (DICOM in),
``reports`` (report text), ``viewing`` (opening a study), ``worklists`` (worklists, folders and
entries)."""
