package stunserver

import (
	"net/netip"

	"github.com/pion/stun/v3"
)

// Authenticator checks short-term credentials (RFC 8489 §9.1) on Binding
// requests. A node signs its requests to its coordinator with USERNAME and
// MESSAGE-INTEGRITY, so the coordinator learns, first hand, which public
// address each node's socket maps to: the evidence its peers may punch.
// Requests without credentials are answered as before (netcheck, and any
// STUN client, may use the server).
type Authenticator interface {
	// Password returns the short-term password for username, or false when
	// the username is unknown. It runs on the packet path: it must not
	// block.
	Password(username string) (string, bool)
	// Observed records that an authenticated request from username came
	// from src. It runs on the packet path: it must not block.
	Observed(username string, src netip.AddrPort)
}

// Results of authenticated requests.
const (
	ResultBadRequest   = "bad_request"  // USERNAME without MESSAGE-INTEGRITY or the reverse: 400 sent
	ResultUnauthorized = "unauthorized" // an unknown USERNAME or a wrong MESSAGE-INTEGRITY: 401 sent
)

// maxUsername bounds USERNAME (RFC 8489 §14.3: under 513 bytes).
const maxUsername = 512

// authenticate applies RFC 8489 §9.1.3 to a request that carries either
// credential attribute. It returns the username and the integrity that
// signs the success response, or a nil integrity with the error
// response's code and result.
func (s *Server) authenticate(req *stun.Message) (string, stun.MessageIntegrity, stun.ErrorCode, string) {
	hasUser, hasMI := req.Contains(stun.AttrUsername), req.Contains(stun.AttrMessageIntegrity)
	if !hasUser || !hasMI {
		return "", nil, stun.CodeBadRequest, ResultBadRequest
	}
	var user stun.Username
	if err := user.GetFrom(req); err != nil || len(user) > maxUsername {
		return "", nil, stun.CodeBadRequest, ResultBadRequest
	}
	pass, ok := s.auth.Password(user.String())
	if !ok {
		return "", nil, stun.CodeUnauthorized, ResultUnauthorized
	}
	mi := stun.NewShortTermIntegrity(pass)
	if err := mi.Check(req); err != nil {
		return "", nil, stun.CodeUnauthorized, ResultUnauthorized
	}
	return user.String(), mi, 0, ""
}
