"""The four ways policies travel (seed draft sections 4 to 6), behind one call per mode."""
