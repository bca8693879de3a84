"""What a bot knows about its business: documents cut into chunks, found again for a customer's question.

- `terms`: the words a chunk is found by (accents folded, stop words dropped, stemmed for German, Spanish, English);
- `extract`: readable text out of an upload or a page (PDF, HTML, Markdown, plain text);
- `chunking`: a document cut by tokens at its headings and paragraphs, headings carried into each chunk;
- `service`: adding, listing and deleting documents, and searching them (the search endpoint and the turn).
"""
