package caddymcp

// Validate checks the app configuration (filled in by the parser work).
func (a *App) Validate() error { return nil }
