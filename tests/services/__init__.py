"""The product's rules, route by route, through the HTTP app and a real database."""
