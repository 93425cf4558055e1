"""The back office: the journals of a shop's terminals gathered into PostgreSQL, one set of books, and the owner's
page (`countertop office ...`). It never imports the terminal's shell or drivers."""
