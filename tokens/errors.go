package tokens

import (
	"errors"
	"net/http"
)

// OAuth 2.0 Bearer Token error codes (RFC 6750 §3.1) used by this package.
const (
	CodeInvalidRequest = "invalid_request"
	CodeInvalidToken   = "invalid_token"
)

// ErrNoToken is returned by BearerToken (and Validate for an empty token)
// when the request carries no bearer token at all. Per RFC 6750 §3.1 the
// response is 401 with a WWW-Authenticate challenge that has no error code.
var ErrNoToken = errors.New("tokens: no bearer token")

// Error is a token or request error that maps onto an RFC 6750 response:
// Status is the HTTP status (401 or 400), Code the error attribute of the
// WWW-Authenticate challenge, Description a short, fixed text that is safe to
// send as error_description (it never contains the token or any claim value).
type Error struct {
	Status      int
	Code        string
	Description string
	cause       error // internal detail for logs; never sent to clients
}

func (e *Error) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.Description + ": " + e.cause.Error()
	}
	return e.Code + ": " + e.Description
}

// Unwrap returns the internal cause (for logging), if any.
func (e *Error) Unwrap() error { return e.cause }

func invalidToken(desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: desc}
}

func invalidTokenCause(desc string, cause error) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: desc, cause: cause}
}

func invalidRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: desc}
}

// Preallocated errors for the common rejections: they carry no per-request
// data, so sharing them is safe and keeps the reject path allocation-free.
var (
	errTooLarge       = invalidToken("token too large")
	errMalformed      = invalidToken("malformed token")
	errAlgNotAllowed  = invalidToken("signing algorithm not allowed")
	errUnknownIssuer  = invalidToken("issuer not trusted")
	errAudience       = invalidToken("token audience does not include this resource")
	errNoAudience     = invalidToken("token has no audience")
	errExpired        = invalidToken("token expired")
	errNoExp          = invalidToken("token has no expiry")
	errNotYetValid    = invalidToken("token not yet valid")
	errIssuedInFuture = invalidToken("token issued in the future")
	errTenant         = invalidToken("token belongs to another tenant")
	errUnknownKey     = invalidToken("signing key not found")
	errSignature      = invalidToken("signature verification failed")
	errCritical       = invalidToken("unsupported critical header")
	errClaimType      = invalidToken("malformed claim")
)
