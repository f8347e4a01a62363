variable "PKGS" { default = ["curl", "git"] }
variable "DEBUG" { default = false }
target "default" {
  args = {
    A = "x %{ if DEBUG }debug%{ else }release%{ endif } y"
    B = "%{ for i, p in PKGS }${i}:${p} %{ endfor }"
    C = "a   %{~ if true ~}   b   %{~ endif ~}   c"
  }
  dockerfile-inline = <<EOT
FROM busybox
%{ for p in PKGS ~}
RUN echo ${p}
%{ endfor ~}
%{ if DEBUG }RUN echo debug%{ endif }
EOT
}
