"""Evidence: a hashed, versioned forensic bundle per incident, and its export."""
