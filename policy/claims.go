package policy

import "strings"

// AgentFromClaims builds an Agent from verified token claims (as decoded
// from JSON). agentClaim names the client id claim ("" = "client_id", then
// "azp"); groupsClaim the groups claim ("" = "groups"; a string or an array
// of strings). Subject is "sub".
func AgentFromClaims(claims map[string]any, agentClaim, groupsClaim string) Agent {
	a := Agent{Claims: claims}
	if agentClaim != "" {
		a.ClientID, _ = claims[agentClaim].(string)
	} else {
		if a.ClientID, _ = claims["client_id"].(string); a.ClientID == "" {
			a.ClientID, _ = claims["azp"].(string)
		}
	}
	a.Subject, _ = claims["sub"].(string)
	if groupsClaim == "" {
		groupsClaim = "groups"
	}
	a.Groups = stringList(claims[groupsClaim], false)
	return a
}

// ScopesFromClaims returns the token's scopes: "scope" (RFC 9068: a
// space-separated string) or "scp" (a string or an array of strings).
func ScopesFromClaims(claims map[string]any) []string {
	if v, ok := claims["scope"]; ok {
		return stringList(v, true)
	}
	return stringList(claims["scp"], true)
}

func stringList(v any, splitSpaces bool) []string {
	switch v := v.(type) {
	case string:
		if splitSpaces {
			return strings.Fields(v)
		}
		if v == "" {
			return nil
		}
		return []string{v}
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
