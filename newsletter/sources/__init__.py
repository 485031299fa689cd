"""Sources of articles: each fetches and normalises into `FeedItem`s; no storage here."""
