"""State changes of the studies app, one module per domain: ``ingestion`` (DICOM in),
``reports`` (report text), ``worklists`` (worklists, folders and entries)."""
