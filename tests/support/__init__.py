"""What the tests share: request helpers, process helpers, fakes and catalogues."""
