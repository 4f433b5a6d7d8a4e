"""Reading tables, inferring their schema, and turning cells into tensors."""
