-- Argo CD health check for Herald's WebhookEndpoint (hooks.herald.dev).
-- argocd-cm key: resource.customizations.health.hooks.herald.dev_WebhookEndpoint
-- Source: charts/herald/argocd/ in github.com/herald-dev/herald, with a ready argocd-cm.yaml.
--
-- Argo CD runs argocd-cm scripts without Lua's string library, so this uses only the
-- base and table libraries. Herald's tests (charts/argocd_test.go) run it the same way,
-- against objects written by Herald's real controllers.
--
--   Progressing  Herald has not reconciled the current spec yet (kstatus: observedGeneration
--                behind metadata.generation), no Ready condition yet, a re-enable on its
--                way, or a reason Herald resolves by itself (SecretNotFound: generating it)
--   Healthy      Ready=True, including status.state Throttled: the receiver asked Herald to
--                slow down and it does (the message says to what); deliveries still flow
--   Suspended    spec.suspend holds the deliveries on purpose
--   Degraded     auto-disabled (Disabled=True); Ready=False for a reason a person must
--                fix: InvalidURL, SecretKeyMissing, InvalidSecret, PreviousSecretNotFound,
--                ReferencedSecretNotFound, InvalidTLS, InvalidConfiguration,
--                InvalidTransform, ServiceNotFound, InvalidService, Disabled (the reasons
--                are declared in api/v1alpha1/reasons.go); status.state Failing (the last
--                attempts failed, retries follow); TransformHealthy=False (the transform
--                failed on an event, which was dead-lettered)

local REENABLE = "hooks.herald.dev/reenable"

-- Ready=False reasons the operator resolves without help (api/v1alpha1
-- SelfResolvingReasons; a test keeps the two equal). Every other reason needs a person,
-- including any a newer Herald adds: a Degraded someone reads beats a Progressing that
-- hides a problem forever.
local SELF_RESOLVING = {
  SecretNotFound = true,
}

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
  return health("Progressing", "Waiting for Herald to reconcile generation " .. generation ..
    " (observed: " .. observed .. ")")
end

-- The dispatcher owns Disabled and writes it under its own field manager; it is checked
-- before Ready because the manager mirrors it into Ready only on its next reconcile.
local disabled = condition(status, "Disabled")
if disabled ~= nil and disabled.status == "True" then
  local token = (obj.metadata.annotations or {})[REENABLE]
  if token ~= nil and token ~= "" and token ~= status.lastHandledReenable then
    return health("Progressing", "Re-enable requested (" .. REENABLE .. "=" .. token ..
      "); waiting for the dispatcher")
  end
  -- A spec edit re-enables too; the dispatcher stamps the generation it last saw.
  if disabled.observedGeneration ~= nil and disabled.observedGeneration < generation then
    return health("Progressing", "Spec changed after the endpoint was auto-disabled; " ..
      "waiting for the dispatcher to re-enable it")
  end
  return health("Degraded", "Auto-disabled: " .. text(disabled.message) ..
    ". Deliveries are held; re-enable by setting annotation " .. REENABLE ..
    " to a new value, or by changing the spec")
end

local ready = condition(status, "Ready")
if ready == nil then
  return health("Progressing", "Waiting for Herald to report the Ready condition")
end
if ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  return health("Progressing", "Waiting for Herald to re-check readiness for generation " .. generation)
end
if ready.status == "True" then
  -- The dispatcher's view of the receiver (status.state, api/v1alpha1 Delivery*).
  local transform = condition(status, "TransformHealthy")
  if transform ~= nil and transform.status == "False" then
    return health("Degraded", "TransformFailed: " .. text(transform.message))
  end
  if status.state == "Failing" then
    local last = status.lastAttempt or {}
    return health("Degraded", "Failing: " .. text(status.consecutiveFailures) ..
      " consecutive failed attempts; last: " .. text(last.error) .. ". Retries follow the schedule")
  end
  if status.state == "Throttled" then
    local th = status.throttle or {}
    local paused = ""
    if th.pausedUntil ~= nil then
      paused = "; paused until " .. text(th.pausedUntil) .. " (Retry-After)"
    end
    return health("Healthy", "Throttled: the receiver answered " .. text(th.reason) ..
      "; Herald sends at most " .. text(th.requestsPerSecond) .. " requests/s with " ..
      text(th.maxInFlight) .. " in flight until it recovers" .. paused)
  end
  return health("Healthy", text(ready.message))
end
if ready.reason == "Suspended" then
  return health("Suspended", text(ready.message))
end
if ready.status ~= "False" or SELF_RESOLVING[ready.reason] then
  return health("Progressing", text(ready.reason) .. ": " .. text(ready.message))
end
return health("Degraded", text(ready.reason) .. ": " .. text(ready.message))
