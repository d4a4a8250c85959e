"""One Prefect flow per funnel step."""
