"""Building blocks every method uses: encoders and their weights, functional math, layers, losses, metrics."""
