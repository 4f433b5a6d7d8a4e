"""Builders for the bundled demo data set and AV-MNIST."""
