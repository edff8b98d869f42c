"""crystaloop.data: records, datasets, periodic graphs and the candidate store."""
