-- Argo CD health of a datamesh.dev object (Domain, DataProduct or AccessPolicy), read from the
-- kstatus conditions the operator writes: Ready, Reconciling and Stalled, exactly one of them
-- True, each stamped with the generation it describes (observedGeneration).
--   Healthy      Ready at the current generation
--   Degraded     Stalled at the current generation: a person must act (the message says what)
--   Progressing  anything else: not reconciled yet, reconciling, or an older generation's state
-- Without this check Argo CD calls every object of a custom kind Healthy as soon as it exists.
local generation = obj.metadata.generation

local function holds_now(condition)
  return condition ~= nil and (generation == nil or condition.observedGeneration == generation)
end

local ready, stalled, reconciling
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.status == "True" then
      if condition.type == "Ready" then
        ready = condition
      elseif condition.type == "Stalled" then
        stalled = condition
      elseif condition.type == "Reconciling" then
        reconciling = condition
      end
    end
  end
end

local function said(condition)
  return condition.message or condition.reason or ""
end

if holds_now(stalled) then
  return { status = "Degraded", message = said(stalled) }
end
if holds_now(ready) then
  return { status = "Healthy", message = said(ready) }
end
if holds_now(reconciling) then
  return { status = "Progressing", message = said(reconciling) }
end
return {
  status = "Progressing",
  message = "Waiting for datamesh-operator to reconcile generation " .. tostring(generation),
}
