// vhostfix as Apache CloudStack's KVM agent "libvirt VM XML transformer" hook.
//
// The agent's contract (apache/cloudstack,
// plugins/hypervisors/kvm/src/main/java/com/cloud/hypervisor/kvm/resource/LibvirtKvmAgentHook.java;
// agent/src/main/java/com/cloud/agent/properties/AgentProperties.java):
// with agent.hooks.basedir (default /etc/cloudstack/agent/hooks),
// agent.hooks.libvirt_vm_xml_transformer.script (default
// libvirt-vm-xml-transformer.groovy) and .method (default transform), the
// agent runs this script with a GroovyScriptEngine rooted at the base
// directory, takes the object the script evaluates to, and calls
// transform(logger, xml) on it with its log4j logger and the domain XML of a
// VM it is about to start. The returned value is the XML it hands to libvirt.
//
// Whatever goes wrong in vhostfix (missing, failing, too slow), the XML the
// agent gave comes back unchanged, so the VM starts as it would without this
// hook; the reason goes to the agent's log.

import java.util.concurrent.TimeUnit

class VhostfixXmlTransformer {
    // /usr/bin/vhostfix unless VHOSTFIX_BIN names another binary.
    String vhostfix = System.getenv('VHOSTFIX_BIN') ?: '/usr/bin/vhostfix'
    long timeoutSeconds = 20

    def transform(logger, xml) {
        String original = xml as String
        try {
            Process proc = [vhostfix, 'filter', '-'].execute()
            def out = new ByteArrayOutputStream()
            def err = new ByteArrayOutputStream()
            Thread outReader = proc.consumeProcessOutputStream(out)
            Thread errReader = proc.consumeProcessErrorStream(err)
            Thread writer = Thread.start {
                try {
                    proc.outputStream.withStream { it.write(original.getBytes('UTF-8')) }
                } catch (IOException ignored) {
                    // vhostfix went away before reading everything: its exit status says why
                }
            }
            if (!proc.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                proc.destroyForcibly()
                logger.warn("vhostfix: '${vhostfix} filter' took longer than ${timeoutSeconds} s; the domain XML is passed on unchanged")
                return original
            }
            writer.join(1000)
            outReader.join(1000)
            errReader.join(1000)
            String messages = err.toString('UTF-8').trim()
            int rc = proc.exitValue()
            if (rc != 0) {
                logger.warn("vhostfix: '${vhostfix} filter' failed (exit ${rc}); the domain XML is passed on unchanged: ${messages}")
                return original
            }
            String fixed = out.toString('UTF-8')
            if (fixed.trim().isEmpty()) {
                logger.warn("vhostfix: '${vhostfix} filter' printed nothing; the domain XML is passed on unchanged")
                return original
            }
            // One log line per vhostfix line: its warnings as warnings.
            messages.eachLine { line ->
                if (line.contains(': warning:') || line.contains(': error:')) {
                    logger.warn(line)
                } else if (line) {
                    logger.info(line)
                }
            }
            return fixed
        } catch (Exception e) {
            logger.warn("vhostfix: cannot run '${vhostfix} filter' (${e}); the domain XML is passed on unchanged")
            return original
        }
    }
}

new VhostfixXmlTransformer()
