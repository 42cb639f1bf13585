"""The run report: one self-contained HTML file with every result worth a look, readable offline."""
