"""One module alone, named after it (a store operation runs on each store, real Redis included)."""
