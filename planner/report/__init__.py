"""Every rendering of a result: JSON dicts, rich tables, CSV and Markdown, plots, the HTML page."""
