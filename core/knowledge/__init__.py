"""What a bot knows about its business: documents cut into chunks, found again for a customer's question.

- `terms`: the words a chunk is found by (accents folded, stop words dropped, stemmed for German, Spanish, English);
- `extract`: readable text out of an upload or a page (PDF, HTML, Markdown, plain text);
- `fetch`: pages fetched for URL imports, never from an address the operator did not allow;
- `chunking`: a document cut by tokens at its headings and paragraphs, headings carried into each chunk;
- `embedder`, `indexer`, `vectors`: with EMBEDDINGS_MODEL, embeddings charged to the account, documents embedded
  in the background, and each bot's vectors searched in memory;
- `service`: adding, replacing and deleting documents, and searching them (the search endpoint and the turn).
"""
