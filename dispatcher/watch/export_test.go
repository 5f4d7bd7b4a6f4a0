package watch

import "k8s.io/apimachinery/pkg/types"

// Holds reports whether the content of the Secret is held.
func (s *ReferencedSecrets) Holds(namespace, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.content[types.NamespacedName{Namespace: namespace, Name: name}]
	return ok
}
