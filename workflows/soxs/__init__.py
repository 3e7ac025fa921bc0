"""EDPS workflow package for the soxs-mflat recipe (SOXS and X-shooter master flats)."""
