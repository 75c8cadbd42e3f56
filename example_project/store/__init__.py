"""The app of the example shop (label ``store``): catalogue, sellers, stock, and the tag-cache panel."""
