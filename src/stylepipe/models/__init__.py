"""Networks: encoders and their weights, the AdaIN decoder, Johnson's transformer, published models."""
