-- Argo CD health check for Herald's WebhookEventType (hooks.herald.dev).
-- argocd-cm key: resource.customizations.health.hooks.herald.dev_WebhookEventType
-- Source: charts/herald/argocd/ in github.com/herald-dev/herald, with a ready argocd-cm.yaml.
--
-- Argo CD runs argocd-cm scripts without Lua's string library, so this uses only the
-- base and table libraries. Herald's tests (charts/argocd_test.go) run it the same way,
-- against objects written by Herald's real controllers.
--
--   Progressing  Herald has not validated the current spec yet (kstatus: observedGeneration
--                behind metadata.generation), or no Ready condition yet
--   Healthy      Ready=True: the schema compiles, the examples validate, and this object
--                owns its type in the namespace
--   Degraded     Ready=False: InvalidSchema (events of the type are accepted unchecked
--                meanwhile), InvalidExample, DuplicateEventType (an older object declares
--                the same type)

local function text(v)
  if v == nil then
    return ""
  end
  return tostring(v)
end

local function condition(status, kind)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function health(s, message)
  return { status = s, message = message }
end

local generation = obj.metadata.generation or 0
local status = obj.status or {}
local observed = status.observedGeneration or 0

-- Until the manager has seen the current spec, the rest of status describes an older one.
if observed < generation then
  return health("Progressing", "Waiting for Herald to validate generation " .. generation ..
    " (observed: " .. observed .. ")")
end

local ready = condition(status, "Ready")
if ready == nil then
  return health("Progressing", "Waiting for Herald to report the Ready condition")
end
if ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  return health("Progressing", "Waiting for Herald to re-validate generation " .. generation)
end
if ready.status == "True" then
  return health("Healthy", text(ready.message))
end
if ready.status ~= "False" then
  return health("Progressing", text(ready.reason) .. ": " .. text(ready.message))
end
-- Every reason of Ready=False needs a person today, and so does any a newer Herald adds.
return health("Degraded", text(ready.reason) .. ": " .. text(ready.message))
