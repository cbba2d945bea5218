package caddymcp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseCaddyfile adapts arbitrary Caddyfile text through the `mcp`
// global option and the `mcp_gateway` directive: it may fail, never panic.
// Seeded with the golden inputs. Run: go test -fuzz FuzzParseCaddyfile ./caddymcp
func FuzzParseCaddyfile(f *testing.F) {
	files, _ := filepath.Glob("testdata/adapt/*.caddyfiletest")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		in, _, _ := strings.Cut(string(data), "----------")
		f.Add(in)
	}
	f.Add(globalCaddyfile("tenant a {\n\tconnection c {\n\t\theader X y\n\t}\n}"))
	f.Add(gatewayCaddyfile("server s {\n\ttenant acme\n\tupstream https://u.example\n\treverse_proxy {\n\t}\n}"))
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1<<14 || strings.Contains(in, "import") {
			return // imports read files; the lexer is Caddy's
		}
		_, _ = adaptCaddyfile(in)
	})
}
