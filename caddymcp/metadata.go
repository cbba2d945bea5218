package caddymcp

import (
	"encoding/json"
	"net/http"
)

// protectedResourceMetadata is the RFC 9728 document of a server.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
	ResourcePolicyURI      string   `json:"resource_policy_uri,omitempty"`
	ResourceTOSURI         string   `json:"resource_tos_uri,omitempty"`
	ResourceLogoURI        string   `json:"resource_logo_uri,omitempty"`
}

func (s *server) metadataDocument(resource string) ([]byte, error) {
	doc := protectedResourceMetadata{
		Resource:               resource,
		AuthorizationServers:   s.authServers,
		ScopesSupported:        s.cfg.Scopes,
		BearerMethodsSupported: []string{"header"},
	}
	if b := s.cfg.Branding; b != nil {
		doc.ResourceName = b.Name
		doc.ResourceDocumentation = b.Documentation
		doc.ResourcePolicyURI = b.PolicyURI
		doc.ResourceTOSURI = b.TOSURI
		doc.ResourceLogoURI = b.LogoURI
	}
	return json.Marshal(doc)
}

// serveMetadata answers GET /.well-known/oauth-protected-resource<path>.
func (s *server) serveMetadata(w http.ResponseWriter, r *http.Request) error {
	doc := s.metaStatic
	if doc == nil {
		var err error
		if doc, err = s.metadataDocument(s.resourceFor(r)); err != nil {
			return err
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	// Browser-based MCP clients fetch this document cross-origin.
	h.Set("Access-Control-Allow-Origin", "*")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(doc)
	return err
}
