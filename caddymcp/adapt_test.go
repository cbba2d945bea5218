package caddymcp

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// TestAdaptGolden adapts every testdata/adapt/*.caddyfiletest: the
// Caddyfile, a line of ten dashes, then the expected JSON or, when that
// part does not start with `{`, text the adapt error must contain.
// UPDATE_GOLDEN=1 rewrites the JSON parts from the current output.
func TestAdaptGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfileText, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatalf("%s: no ---------- separator", file)
			}
			caddyfileText = strings.TrimSpace(caddyfileText) + "\n"
			expected = strings.TrimSpace(expected)
			got, err := adaptCaddyfile(caddyfileText)
			if expected != "" && expected[0] != '{' {
				if err == nil {
					t.Fatalf("expected an error containing %q, got none", expected)
				}
				if !strings.Contains(err.Error(), expected) {
					t.Fatalf("error\n%v\ndoes not contain\n%s", err, expected)
				}
				return
			}
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			if os.Getenv("UPDATE_GOLDEN") != "" {
				out := strings.TrimSpace(caddyfileText) + "\n----------\n" + got + "\n"
				if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != expected {
				t.Errorf("adapted JSON differs from %s (UPDATE_GOLDEN=1 to rewrite):\n%s", file, lineDiff(expected, got))
			}
			checkRoundTrip(t, []byte(got))
		})
	}
}

// adaptCaddyfile adapts Caddyfile text to indented JSON.
func adaptCaddyfile(text string) (string, error) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// lineDiff shows the first differing lines of two texts.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + itoa(i+1) + ":\n- " + wl + "\n+ " + gl
		}
	}
	return ""
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
