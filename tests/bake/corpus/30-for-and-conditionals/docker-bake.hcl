variable "ARCHES" { default = ["amd64", "arm64", "riscv64"] }
variable "RELEASE" { default = true }
target "default" {
  platforms = [for a in ARCHES : "linux/${a}" if a != "riscv64"]
  labels    = { for i, a in ARCHES : "arch.${i}" => upper(a) }
  tags      = RELEASE ? ["acme/app:stable", "acme/app:latest"] : ["acme/app:edge"]
  args      = {
    FIRST = ARCHES[0]
    COUNT = length(ARCHES) >= 3 && !RELEASE ? "many-dev" : "other"
  }
}
