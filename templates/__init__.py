"""The report's templates, the lab notebook and the message catalogs, as the package data
`pipeline.templates` (pyproject.toml maps this folder there); found by pipeline.artifacts."""
