"""Instruction data for MING: the shared record schema (`records`), converters for raw medical sources
(`sources/`), cleaning, deduplication, mixing to a recipe's proportions and the build report.

Nothing is imported here; import the submodule you need (`from ming.data.records import iter_records`)."""
