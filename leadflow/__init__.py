"""leadflow: the B2B lead-qualification funnel as Prefect flows."""

__version__ = "0.1.0"
