package tokens

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	tok := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	big := strings.Repeat("a", MaxTokenSize+1)
	cases := []struct {
		name    string
		url     string
		headers []string // Authorization values
		ctype   string
		want    string
		err     error // ErrNoToken or nil
		status  int
		code    string
	}{
		{name: "ok", headers: []string{"Bearer " + tok}, want: tok},
		{name: "scheme case-insensitive", headers: []string{"bEaReR " + tok}, want: tok},
		{name: "several spaces (1*SP)", headers: []string{"Bearer   " + tok}, want: tok},
		{name: "b64token padding", headers: []string{"Bearer abc+/~=="}, want: "abc+/~=="},
		{name: "json content type", headers: []string{"Bearer " + tok}, ctype: "application/json", want: tok},
		{name: "absent", err: ErrNoToken},
		{name: "other scheme", headers: []string{"Basic dXNlcjpwYXNz"}, err: ErrNoToken},
		{name: "bearer alone", headers: []string{"Bearer"}, status: 400, code: CodeInvalidRequest},
		{name: "bearer and spaces", headers: []string{"Bearer    "}, status: 400, code: CodeInvalidRequest},
		{name: "empty header", headers: []string{""}, status: 400, code: CodeInvalidRequest},
		{name: "bearer glued", headers: []string{"Bearer" + tok}, status: 400, code: CodeInvalidRequest},
		{name: "two tokens", headers: []string{"Bearer " + tok + " " + tok}, status: 400, code: CodeInvalidRequest},
		{name: "tab separator", headers: []string{"Bearer\t" + tok}, status: 400, code: CodeInvalidRequest},
		{name: "comma", headers: []string{"Bearer a,b"}, status: 400, code: CodeInvalidRequest},
		{name: "quote", headers: []string{`Bearer "abc"`}, status: 400, code: CodeInvalidRequest},
		{name: "only padding", headers: []string{"Bearer ==="}, status: 400, code: CodeInvalidRequest},
		{name: "padding inside", headers: []string{"Bearer ab=c"}, status: 400, code: CodeInvalidRequest},
		{name: "non-ascii", headers: []string{"Bearer abcé"}, status: 400, code: CodeInvalidRequest},
		{name: "multiple headers", headers: []string{"Bearer " + tok, "Bearer " + tok}, status: 400, code: CodeInvalidRequest},
		{name: "oversized", headers: []string{"Bearer " + big}, status: 401, code: CodeInvalidToken},
		{name: "query token", url: "/mcp?access_token=" + tok, status: 400, code: CodeInvalidRequest},
		{name: "query token with header", url: "/mcp?x=1&access_token=" + tok, headers: []string{"Bearer " + tok}, status: 400, code: CodeInvalidRequest},
		{name: "query token escaped name", url: "/mcp?access%5Ftoken=" + tok, status: 400, code: CodeInvalidRequest},
		{name: "query other param", url: "/mcp?access_tokens=1", headers: []string{"Bearer " + tok}, want: tok},
		{name: "form body", ctype: "application/x-www-form-urlencoded; charset=utf-8", status: 400, code: CodeInvalidRequest},
		{name: "form body uppercase", ctype: "Application/X-WWW-Form-URLEncoded", headers: []string{"Bearer " + tok}, status: 400, code: CodeInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := c.url
			if u == "" {
				u = "/mcp"
			}
			r := httptest.NewRequest(http.MethodPost, u, strings.NewReader("access_token="+tok))
			for _, h := range c.headers {
				r.Header.Add("Authorization", h)
			}
			if c.ctype != "" {
				r.Header.Set("Content-Type", c.ctype)
			}
			got, err := BearerToken(r)
			switch {
			case c.code != "":
				e := mustErr(t, err, c.status, c.code)
				if strings.Contains(e.Description, tok) || strings.Contains(e.Error(), tok) {
					t.Fatal("error echoes the token")
				}
			case c.err != nil:
				if !errors.Is(err, c.err) {
					t.Fatalf("want %v, got %v", c.err, err)
				}
			default:
				if err != nil || got != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
			}
		})
	}
}

// Through a real server: net/http trims OWS around field values.
func TestBearerTokenOverHTTP(t *testing.T) {
	var got string
	var gotErr error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotErr = BearerToken(r)
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Authorization", "Bearer abc.def.ghi  ")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotErr != nil || got != "abc.def.ghi" {
		t.Fatalf("got %q %v", got, gotErr)
	}
}

// TestB64TokenAlphabet checks isB64Token against RFC 6750's b64token
// grammar for every byte, alone and before padding.
func TestB64TokenAlphabet(t *testing.T) {
	grammar := regexp.MustCompile(`^[A-Za-z0-9._~+/-]+=*$`)
	for c := 0; c < 256; c++ {
		for _, s := range []string{string([]byte{byte(c)}), "ab" + string([]byte{byte(c)}) + "cd", "x" + string([]byte{byte(c)}) + "=="} {
			if got, want := isB64Token(s), grammar.MatchString(s); got != want {
				t.Errorf("isB64Token(%q) = %v, grammar says %v", s, got, want)
			}
		}
	}
	if isB64Token("==") || isB64Token("") {
		t.Error("padding alone or the empty string is not a b64token")
	}
}

func BenchmarkBearerToken(b *testing.B) {
	r, _ := http.NewRequest(http.MethodPost, "http://gw.example/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+strings.Repeat("eyJhbGciOiJSUzI1NiJ9.", 40)+"sig")
	for b.Loop() {
		if _, err := BearerToken(r); err != nil {
			b.Fatal(err)
		}
	}
}
