package access

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/httpjson"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/pki"
)

// UsersBucket holds the API users' certificates, by user name.
const UsersBucket = "atoll-users"

// User is the certificates issued to a user name; revoking the user
// revokes every one of them.
type User struct {
	Name  string     `json:"name"`
	Certs []UserCert `json:"certs"`
}

// UserCert is one certificate of a user.
type UserCert struct {
	Serial  string    `json:"serial"`
	Role    string    `json:"role"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	Revoked bool      `json:"revoked,omitempty"`
}

// RecordUser adds cert, just issued, to its user's record.
func (s *Service) RecordUser(ctx context.Context, cert *x509.Certificate) error {
	id := pki.IdentityOf(cert)
	c := UserCert{Serial: id.Serial, Role: id.Role, Issued: s.cfg.Clock.Now(), Expires: cert.NotAfter}
	return s.updateUser(ctx, id.Name, true, func(u *User) { u.Certs = append(u.Certs, c) })
}

// RevokeUser revokes every certificate of the user name; it returns how
// many were not revoked yet, and false for a name never issued one.
func (s *Service) RevokeUser(ctx context.Context, name string) (int, bool, error) {
	n := 0
	err := s.updateUser(ctx, name, false, func(u *User) {
		for i := range u.Certs {
			if !u.Certs[i].Revoked {
				u.Certs[i].Revoked = true
				n++
			}
		}
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	return n, err == nil, err
}

// updateUser changes the record of name with f, compare-and-set (several
// hubs), making it when create says so; it updates Auth at once.
func (s *Service) updateUser(ctx context.Context, name string, create bool, f func(*User)) error {
	for range 5 {
		var u User
		var rev uint64
		e, err := s.users.Get(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) && create:
			u.Name = name
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(e.Value(), &u); err != nil {
				return fmt.Errorf("user %s: %w", name, err)
			}
			rev = e.Revision()
		}
		f(&u)
		b, _ := json.Marshal(u)
		if rev == 0 {
			_, err = s.users.Create(ctx, name, b)
		} else {
			_, err = s.users.Update(ctx, name, b, rev)
		}
		if err == nil {
			s.cfg.Auth.setUser(u)
			return nil
		}
	}
	return fmt.Errorf("user %s: changed by others meanwhile; try again", name)
}

func (s *Service) userChanged(e jetstream.KeyValueEntry, _ bool) {
	if e.Operation() != jetstream.KeyValuePut {
		return
	}
	var u User
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		s.cfg.Logger.Warn("bad user in store", "user", e.Key(), "err", err)
		return
	}
	s.cfg.Auth.setUser(u)
}

func (s *Service) listUsers(w http.ResponseWriter, r *http.Request) {
	keys, err := s.users.Keys(r.Context())
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		fail(w, err)
		return
	}
	sort.Strings(keys)
	out := []api.UserInfo{}
	for _, k := range keys {
		e, err := s.users.Get(r.Context(), k)
		if err != nil {
			continue
		}
		var u User
		if json.Unmarshal(e.Value(), &u) != nil {
			continue
		}
		ui := api.UserInfo{Name: u.Name}
		for _, c := range u.Certs {
			ui.Certificates = append(ui.Certificates, api.UserCertInfo{Serial: c.Serial, Role: c.Role, Issued: c.Issued, Expires: c.Expires, Revoked: c.Revoked})
		}
		out = append(out, ui)
	}
	httpjson.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) revokeUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	n, ok, err := s.RevokeUser(r.Context(), name)
	if err != nil {
		fail(w, err)
		return
	}
	if !ok {
		httpjson.WriteError(w, http.StatusNotFound, fmt.Sprintf("no user %q", name))
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, api.UserRevoked{Name: name, Revoked: n})
}
