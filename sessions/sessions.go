// Package sessions seals MCP session ids: the Mcp-Session-Id a client sees
// is an AES-256-GCM box around the upstream's session id, the agent that
// created the session, the server and the creation time. Any gateway
// instance holding the same key can open it, so binding and lifetime hold
// across a fleet without shared state; another agent, another server, a
// tampered id or an expired one is refused.
//
// The key is used directly (no key derivation per request): sealing and
// opening cost one AES-GCM operation each.
package sessions

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// KeySize is the size of a sealing key in bytes (AES-256).
const KeySize = 32

// MaxUpstreamID bounds the upstream session id a sealed id may carry.
const MaxUpstreamID = 512

const version = 2

// Errors returned by Open. All of them mean "unknown session" to a client
// (HTTP 404, so it re-initializes).
var (
	ErrMalformed = errors.New("sessions: malformed session id")
	ErrForged    = errors.New("sessions: session id not sealed by this gateway for this server")
	ErrAgent     = errors.New("sessions: session belongs to another agent")
	ErrExpired   = errors.New("sessions: session expired")
)

// Session is what a sealed id carries.
type Session struct {
	// UpstreamID is the session id the upstream MCP server issued.
	UpstreamID string
	// Agent is a digest of the agent identity that created the session.
	Agent [16]byte
	// Created is when the session was created (second precision).
	Created time.Time
	// Affinity is an opaque upstream-affinity value (for example the
	// reverse_proxy cookie naming the upstream instance that holds the
	// session), at most 255 bytes.
	Affinity string
}

// Sealer seals and opens session ids with one key.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a KeySize-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sessions: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// NewKey returns a random key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	_, err := rand.Read(k)
	return k, err
}

// AgentDigest identifies an agent by issuer, subject and client, without
// carrying them in the clear.
func AgentDigest(issuer, subject, client string) [16]byte {
	h := sha256.New()
	for _, s := range []string{issuer, subject, client} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var d [16]byte
	copy(d[:], h.Sum(nil))
	return d
}

// Seal returns the id the client sees for a session of server.
func (s *Sealer) Seal(server string, sess Session) (string, error) {
	if len(sess.UpstreamID) == 0 || len(sess.UpstreamID) > MaxUpstreamID {
		return "", fmt.Errorf("sessions: upstream session id of %d bytes", len(sess.UpstreamID))
	}
	if len(sess.Affinity) > 255 {
		return "", fmt.Errorf("sessions: affinity of %d bytes", len(sess.Affinity))
	}
	ns := s.aead.NonceSize()
	plain := make([]byte, 0, 1+8+16+1+len(sess.Affinity)+len(sess.UpstreamID))
	plain = append(plain, version)
	plain = binary.BigEndian.AppendUint64(plain, uint64(sess.Created.Unix()))
	plain = append(plain, sess.Agent[:]...)
	plain = append(plain, byte(len(sess.Affinity)))
	plain = append(plain, sess.Affinity...)
	plain = append(plain, sess.UpstreamID...)

	buf := make([]byte, ns, ns+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	sealed := s.aead.Seal(buf, buf[:ns], plain, []byte(server))
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open returns the session sealed in id for server, checking that agent
// created it and that it is younger than ttl (0: no limit) at now.
func (s *Sealer) Open(server, id string, agent [16]byte, ttl time.Duration, now time.Time) (*Session, error) {
	ns := s.aead.NonceSize()
	max := base64.RawURLEncoding.EncodedLen(ns + 1 + 8 + 16 + 1 + 255 + MaxUpstreamID + s.aead.Overhead())
	if len(id) > max {
		return nil, ErrMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) < ns+s.aead.Overhead()+1+8+16+1+1 {
		return nil, ErrMalformed
	}
	plain, err := s.aead.Open(nil, raw[:ns], raw[ns:], []byte(server))
	if err != nil {
		return nil, ErrForged
	}
	if plain[0] != version {
		return nil, ErrMalformed
	}
	affEnd := 26 + int(plain[25])
	if affEnd >= len(plain) {
		return nil, ErrMalformed
	}
	sess := &Session{
		Created:    time.Unix(int64(binary.BigEndian.Uint64(plain[1:9])), 0),
		Affinity:   string(plain[26:affEnd]),
		UpstreamID: string(plain[affEnd:]),
	}
	copy(sess.Agent[:], plain[9:25])
	if sess.Agent != agent {
		return nil, ErrAgent
	}
	if ttl > 0 && now.Sub(sess.Created) > ttl {
		return nil, ErrExpired
	}
	return sess, nil
}
