package caddymcp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddymcp/gateway/sessions"
	"github.com/caddymcp/gateway/tokens"
)

// Session binding (SPEC step 6). The Mcp-Session-Id a client sees is sealed
// by the gateway around the upstream's id, the agent, the server and the
// creation time (package sessions); any instance with the same key opens
// it. Idle time needs the last use, which a sealed id cannot carry: each
// instance tracks it in memory (exact on one instance; in a fleet, route a
// session to one instance, or accept that idle counts per instance).

const (
	sessionHeader     = "Mcp-Session-Id"
	sessionKeyStorage = "mcp/session.key"
	defaultSessionTTL = 24 * time.Hour
)

// loadSessionKey returns the sealing key: from config (base64, usually a
// {file.*} or {env.*} placeholder), else from Caddy storage, generated and
// stored once, so every instance sharing the storage shares the key.
func (a *App) loadSessionKey(ctx caddy.Context) ([]byte, error) {
	if a.SessionKey != "" {
		v := strings.TrimSpace(caddy.NewReplacer().ReplaceAll(a.SessionKey, ""))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if k, err := enc.DecodeString(v); err == nil && len(k) == sessions.KeySize {
				return k, nil
			}
		}
		return nil, fmt.Errorf("session_key must be %d random bytes in base64 (for example `head -c 32 /dev/urandom | base64`)", sessions.KeySize)
	}
	st := ctx.Storage()
	if st == nil {
		return sessions.NewKey()
	}
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.Lock(c, sessionKeyStorage); err != nil {
		return nil, fmt.Errorf("locking %s in storage: %v", sessionKeyStorage, err)
	}
	defer func() { _ = st.Unlock(context.WithoutCancel(c), sessionKeyStorage) }()
	if b, err := st.Load(c, sessionKeyStorage); err == nil {
		k, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(k) != sessions.KeySize {
			return nil, fmt.Errorf("storage key %s is not a %d-byte base64 key", sessionKeyStorage, sessions.KeySize)
		}
		return k, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("loading %s from storage: %v", sessionKeyStorage, err)
	}
	k, err := sessions.NewKey()
	if err != nil {
		return nil, err
	}
	if err := st.Store(c, sessionKeyStorage, []byte(base64.StdEncoding.EncodeToString(k))); err != nil {
		return nil, fmt.Errorf("storing %s: %v", sessionKeyStorage, err)
	}
	return k, nil
}

// idleTracker remembers when each session was last used, sharded to keep
// lock contention low. Entries older than the largest idle timeout are
// swept periodically.
type idleTracker struct {
	mu      sync.Mutex
	longest time.Duration
	shards  [64]struct {
		sync.Mutex
		m map[[16]byte]int64
	}
}

func newIdleTracker() *idleTracker {
	t := new(idleTracker)
	for i := range t.shards {
		t.shards[i].m = make(map[[16]byte]int64)
	}
	return t
}

func sessionKeyOf(id string) [16]byte {
	h := sha256.Sum256([]byte(id))
	var k [16]byte
	copy(k[:], h[:16])
	return k
}

// touch records a use at now and reports whether the session was idle for
// longer than idle. A session this instance has not seen counts from its
// creation time.
func (t *idleTracker) touch(id string, created, now time.Time, idle time.Duration) bool {
	k := sessionKeyOf(id)
	sh := &t.shards[k[0]&63]
	sh.Lock()
	defer sh.Unlock()
	last, ok := sh.m[k]
	if !ok {
		last = created.Unix()
	}
	if idle > 0 && now.Unix()-last > int64(idle/time.Second) {
		delete(sh.m, k)
		return true
	}
	sh.m[k] = now.Unix()
	return false
}

func (t *idleTracker) forget(id string) {
	k := sessionKeyOf(id)
	sh := &t.shards[k[0]&63]
	sh.Lock()
	delete(sh.m, k)
	sh.Unlock()
}

// sweep drops entries unused for longer than maxIdle.
func (t *idleTracker) sweep(now time.Time, maxIdle time.Duration) {
	cut := now.Add(-maxIdle).Unix()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.Lock()
		for k, v := range sh.m {
			if v < cut {
				delete(sh.m, k)
			}
		}
		sh.Unlock()
	}
}

func agentDigest(id *tokens.Identity) [16]byte {
	if id == nil {
		return sessions.AgentDigest("", "", "")
	}
	return sessions.AgentDigest(id.Issuer, id.Subject, id.Agent)
}

// openSession replaces the sealed Mcp-Session-Id of r with the upstream's.
// It answers 404 (so the client re-initializes) when the id is not a
// session of this server and agent, or has expired.
func (h *Handler) openSession(w http.ResponseWriter, r *http.Request, x *exchange) (bool, error) {
	sealed := r.Header.Get(sessionHeader)
	if sealed == "" {
		return true, nil
	}
	now := time.Now()
	sess, err := h.app.sealer.Open(x.srv.cfg.Name, sealed, agentDigest(x.id), x.srv.sessionTTL, now)
	if err == nil && x.srv.sessionIdle > 0 && h.app.idle.touch(sealed, sess.Created, now, x.srv.sessionIdle) {
		err = errors.New("session idle for too long")
	}
	if err != nil {
		x.decision.Reason = "session: " + strings.TrimPrefix(err.Error(), "sessions: ")
		h.audit(r, x, "session_refused", 0, 0)
		var id []byte
		if x.msg != nil {
			id = x.msg.ID
		}
		return false, writeJSONRPC(w, http.StatusNotFound, sessionNotFound(id))
	}
	r.Header.Set(sessionHeader, sess.UpstreamID)
	x.sealedSession, x.upstreamSession = sealed, sess.UpstreamID
	x.sessionCreated, x.affinity = sess.Created, sess.Affinity
	if r.Method == http.MethodDelete && x.srv.sessionIdle > 0 {
		h.app.idle.forget(sealed)
	}
	return true, nil
}

func sessionNotFound(id []byte) []byte {
	if len(id) == 0 {
		id = []byte("null")
	}
	return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-32002,"message":"Session not found"}}`)
}

// sealSession rewrites an upstream's Mcp-Session-Id response header into
// the sealed id the client will see.
func (h *Handler) sealSession(hdr http.Header, x *exchange) error {
	affinity := x.affinity
	if name := x.srv.stickyCookie; name != "" {
		// reverse_proxy's `lb_policy cookie` names the upstream instance
		// that served the request: it travels inside the sealed session id
		// (the client never sees it) and comes back as a Cookie on the
		// session's later requests.
		kept := hdr["Set-Cookie"][:0]
		for _, c := range hdr["Set-Cookie"] {
			if v, ok := strings.CutPrefix(c, name+"="); ok {
				v, _, _ = strings.Cut(v, ";")
				affinity = name + "=" + v
				continue
			}
			kept = append(kept, c)
		}
		if len(kept) == 0 {
			hdr.Del("Set-Cookie")
		} else {
			hdr["Set-Cookie"] = kept
		}
	}
	up := hdr.Get(sessionHeader)
	if up == "" {
		return nil
	}
	created := time.Now()
	if up == x.upstreamSession {
		if affinity == x.affinity {
			// The upstream echoes the session the client presented: give
			// the client back the id it holds (same creation time, ttl).
			hdr.Set(sessionHeader, x.sealedSession)
			return nil
		}
		created = x.sessionCreated // same session, new upstream affinity
	}
	sealed, err := h.app.sealer.Seal(x.srv.cfg.Name, sessions.Session{UpstreamID: up, Agent: agentDigest(x.id), Created: created, Affinity: affinity})
	if err != nil {
		hdr.Del(sessionHeader)
		return err
	}
	hdr.Set(sessionHeader, sealed)
	return nil
}

var idlePool = caddy.NewUsagePool()

type idleHandle struct {
	t    *idleTracker
	stop context.CancelFunc
}

func (h idleHandle) Destruct() error { h.stop(); return nil }

// provisionSessions sets up the sealer and the (reload-surviving) idle
// tracker with its sweeper.
func (a *App) provisionSessions(ctx caddy.Context) error {
	key, err := a.loadSessionKey(ctx)
	if err != nil {
		return err
	}
	if a.sealer, err = sessions.NewSealer(key); err != nil {
		return err
	}
	v, _, err := idlePool.LoadOrNew("idle", func() (caddy.Destructor, error) {
		t := newIdleTracker()
		c, stop := context.WithCancel(context.Background())
		go func() {
			tick := time.NewTicker(time.Minute)
			defer tick.Stop()
			for {
				select {
				case <-c.Done():
					return
				case now := <-tick.C:
					t.sweep(now, t.maxIdle())
				}
			}
		}()
		return idleHandle{t: t, stop: stop}, nil
	})
	if err != nil {
		return err
	}
	a.idle = v.(idleHandle).t
	a.idleHeld = true
	return nil
}

func (a *App) cleanupSessions() {
	if a.idleHeld {
		_, _ = idlePool.Delete("idle")
		a.idleHeld = false
	}
}

// noteIdle records a server's idle timeout, so the sweeper keeps entries
// at least that long.
func (t *idleTracker) noteIdle(d time.Duration) {
	t.mu.Lock()
	if d > t.longest {
		t.longest = d
	}
	t.mu.Unlock()
}

func (t *idleTracker) maxIdle() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.longest == 0 {
		return 24 * time.Hour
	}
	return t.longest
}
