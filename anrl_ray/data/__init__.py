"""Domain datasets: on-disk format, synthetic benchmark, converters, Ray Data pipelines."""
