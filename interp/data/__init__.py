"""BBQ data: loading and validation (bbq), the template-disjoint split (split), prompts and letter parsing (prompts), the checksummed download (download)."""
