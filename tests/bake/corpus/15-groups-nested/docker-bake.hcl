group "default" {
  targets = ["all"]
}
group "all" {
  targets = ["backend", "frontend", "api"]
}
group "backend" {
  targets = ["api", "worker"]
}
target "api" { dockerfile = "api.Dockerfile" }
target "worker" { dockerfile = "worker.Dockerfile" }
target "frontend" { dockerfile = "web.Dockerfile" }
