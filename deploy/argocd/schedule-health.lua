-- Argo CD health check for milvusdm.io/MilvusMigrationSchedule.
-- Installed through argocd-cm: resource.customizations.health.milvusdm.io_MilvusMigrationSchedule
local hs = {status = "Progressing", message = "Waiting for the milvusdm operator"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if (condition.type == "Ready" or condition.type == "Pruned") and condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.message or condition.reason or "invalid schedule"
      return hs
    end
  end
end
if obj.spec ~= nil and obj.spec.suspend then
  hs.status = "Suspended"
  hs.message = "Suspended: no new runs"
  return hs
end
local last = obj.status.lastRun or "none yet"
if obj.status.lastRunResult == "Failed" then
  hs.status = "Degraded"
  hs.message = "Last finished run failed (latest: " .. tostring(last) .. ")"
  return hs
end
hs.status = "Healthy"
hs.message = "Next run " .. tostring(obj.status.nextScheduleTime or "unknown") .. "; latest: " .. tostring(last)
return hs
