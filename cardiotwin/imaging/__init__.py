"""Imaging: DICOM reading and writing, de-identification, phantoms and segmentation."""
