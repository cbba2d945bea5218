package sessions

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func sealer(t testing.TB) *Sealer {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpen(t *testing.T) {
	s := sealer(t)
	alice := AgentDigest("https://auth", "alice", "cursor")
	bob := AgentDigest("https://auth", "bob", "cursor")
	created := time.Unix(1_800_000_000, 0)
	id, err := s.Seal("acme-billing", Session{UpstreamID: "UP-123", Agent: alice, Created: created, Affinity: "lb=abc"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(id, "UP-123") {
		t.Fatal("upstream id visible in the sealed id")
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			t.Fatalf("sealed id has a character not allowed in Mcp-Session-Id: %q", c)
		}
	}
	got, err := s.Open("acme-billing", id, alice, time.Hour, created.Add(time.Minute))
	if err != nil || got.UpstreamID != "UP-123" || !got.Created.Equal(created) || got.Affinity != "lb=abc" {
		t.Fatalf("open: %+v %v", got, err)
	}

	// Same id, a second gateway with the same key.
	s2 := &Sealer{aead: s.aead}
	if _, err := s2.Open("acme-billing", id, alice, time.Hour, created); err != nil {
		t.Errorf("another instance with the same key: %v", err)
	}

	cases := []struct {
		name   string
		server string
		id     string
		agent  [16]byte
		now    time.Time
		want   error
	}{
		{"other agent", "acme-billing", id, bob, created, ErrAgent},
		{"other server", "globex-billing", id, alice, created, ErrForged},
		{"expired", "acme-billing", id, alice, created.Add(2 * time.Hour), ErrExpired},
		{"tampered", "acme-billing", flip(id), alice, created, ErrForged},
		{"truncated", "acme-billing", id[:20], alice, created, ErrMalformed},
		{"not base64", "acme-billing", "!!!" + id, alice, created, ErrMalformed},
		{"upstream's raw id", "acme-billing", "UP-123", alice, created, ErrMalformed},
		{"huge", "acme-billing", strings.Repeat("A", 5000), alice, created, ErrMalformed},
	}
	for _, c := range cases {
		if _, err := s.Open(c.server, c.id, c.agent, time.Hour, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	other := sealer(t)
	if _, err := other.Open("acme-billing", id, alice, time.Hour, created); !errors.Is(err, ErrForged) {
		t.Errorf("other key: %v", err)
	}
}

func flip(id string) string {
	b := []byte(id)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestSealRefusesBadInput(t *testing.T) {
	s := sealer(t)
	if _, err := s.Seal("x", Session{UpstreamID: ""}); err == nil {
		t.Error("empty upstream id sealed")
	}
	if _, err := s.Seal("x", Session{UpstreamID: strings.Repeat("a", MaxUpstreamID+1)}); err == nil {
		t.Error("oversized upstream id sealed")
	}
	if _, err := NewSealer(make([]byte, 16)); err == nil {
		t.Error("short key accepted")
	}
}

func FuzzOpen(f *testing.F) {
	s := sealer(f)
	agent := AgentDigest("i", "s", "c")
	id, _ := s.Seal("srv", Session{UpstreamID: "abc", Agent: agent, Created: time.Now()})
	f.Add(id)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, in string) {
		sess, err := s.Open("srv", in, agent, 0, time.Now())
		if err == nil && in != id {
			// Forging a valid box without the key must be impossible.
			t.Fatalf("opened a forged id %q: %+v", in, sess)
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	s := sealer(b)
	agent := AgentDigest("https://auth", "alice", "cursor")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		id, _ := s.Seal("acme", Session{UpstreamID: "0123456789abcdef0123", Agent: agent, Created: now})
		if _, err := s.Open("acme", id, agent, time.Hour, now); err != nil {
			b.Fatal(err)
		}
	}
}
