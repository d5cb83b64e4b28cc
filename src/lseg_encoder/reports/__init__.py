"""Reports: the one JSON writer (schema, version, machine), markdown renderers and every figure."""
