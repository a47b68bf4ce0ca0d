"""AdaIN (Huang & Belongie 2017): the model, its training stages, inference engine, files and export."""
