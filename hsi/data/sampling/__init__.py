"""Sampling: windows and tiles cut from a padded cube, batch augmentation, unlabelled pools."""
