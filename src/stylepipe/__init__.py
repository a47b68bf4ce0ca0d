"""stylepipe: a reproducible pipeline for real-time style transfer (AdaIN, Johnson, Gatys), COCO/WikiArt to an OAK-1."""
