package tokens

import (
	"context"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

type benchEnv struct {
	v     *Validator
	req   *Requirements
	token string
	key   *testKey
}

func newBenchEnv(b *testing.B, alg jwa.SignatureAlgorithm, cached bool) *benchEnv {
	k := newTestKey(b, "bench", alg, 0)
	iss := newTestIssuer(b, "", k)
	ks := iss.keySet(b, nil)
	var c *Cache
	if cached {
		var err error
		if c, err = NewCache(64 << 20); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
	}
	claims := iss.claims(audA, map[string]any{"groups": []string{"internal-tools"}, "azp": "cursor", "jti": "6f1c2b9e-0000-4000-8000-123456789abc"})
	env := &benchEnv{v: NewValidator(c, nil), req: &Requirements{Issuers: []*KeySet{ks}, Audience: audA, Tenant: "acme"}, token: k.sign(b, claims), key: k}
	if _, err := env.v.Validate(context.Background(), env.token, env.req); err != nil {
		b.Fatal(err)
	}
	if c != nil {
		c.rc.Wait()
	}
	return env
}

func benchValidate(b *testing.B, alg jwa.SignatureAlgorithm, cached bool) {
	env := newBenchEnv(b, alg, cached)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := env.v.Validate(ctx, env.token, env.req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateHitRS256(b *testing.B)  { benchValidate(b, jwa.RS256, true) }
func BenchmarkValidateHitES256(b *testing.B)  { benchValidate(b, jwa.ES256, true) }
func BenchmarkValidateMissRS256(b *testing.B) { benchValidate(b, jwa.RS256, false) }
func BenchmarkValidateMissES256(b *testing.B) { benchValidate(b, jwa.ES256, false) }

func benchBare(b *testing.B, alg jwa.SignatureAlgorithm) {
	env := newBenchEnv(b, alg, false)
	var raw any
	if err := env.key.pub.Raw(&raw); err != nil {
		b.Fatal(err)
	}
	buf := []byte(env.token)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := jws.Verify(buf, jws.WithKey(alg, raw)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareJWSVerifyRS256(b *testing.B) { benchBare(b, jwa.RS256) }
func BenchmarkBareJWSVerifyES256(b *testing.B) { benchBare(b, jwa.ES256) }

// Parallel hit path: no shared lock.
func BenchmarkValidateHitParallelES256(b *testing.B) {
	env := newBenchEnv(b, jwa.ES256, true)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := env.v.Validate(ctx, env.token, env.req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRatioMissBare{RS256,ES256} interleave a cache-missing Validate
// and a bare jws.Verify of the same token in small alternating chunks, so
// that machine noise hits both alike; it reports both per-op times and the
// ratio miss/bare.
func benchRatio(b *testing.B, alg jwa.SignatureAlgorithm) {
	env := newBenchEnv(b, alg, false)
	var raw any
	if err := env.key.pub.Raw(&raw); err != nil {
		b.Fatal(err)
	}
	buf := []byte(env.token)
	ctx := context.Background()
	var tMiss, tBare time.Duration
	const chunk = 8
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		for j := 0; j < chunk; j++ {
			if _, err := jws.Verify(buf, jws.WithKey(alg, raw)); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for j := 0; j < chunk; j++ {
			if _, err := env.v.Validate(ctx, env.token, env.req); err != nil {
				b.Fatal(err)
			}
		}
		t2 := time.Now()
		tBare += t1.Sub(t0)
		tMiss += t2.Sub(t1)
	}
	n := float64(b.N * chunk)
	b.ReportMetric(float64(tBare.Nanoseconds())/n, "bare-ns/op")
	b.ReportMetric(float64(tMiss.Nanoseconds())/n, "miss-ns/op")
	b.ReportMetric(float64(tMiss)/float64(tBare), "miss/bare")
}

func BenchmarkRatioMissBareRS256(b *testing.B) { benchRatio(b, jwa.RS256) }
func BenchmarkRatioMissBareES256(b *testing.B) { benchRatio(b, jwa.ES256) }
